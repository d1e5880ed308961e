/*
 * QuPath's "Run for project" without QuPath's application, for the tests of qupath_scripts/.
 *
 *   bash run-groovy.sh VERSION qupath_run_for_project.groovy SCRIPT PROJECT.qpproj save|nosave [ARGS...]
 *
 * For each image of the project, as QuPath does: read its data, run SCRIPT with ARGS as `args`,
 * then (with "save") write the data back when the script changed it. The QP/QPEx helpers the
 * histoclick scripts call at their top are stood in by closures giving what QP gives there:
 * getCurrentImageData, getProject, getProjectEntry, and getQuPath, which is null as in QuPath's
 * headless `QuPath script` command (so the GUI's class-list branch is not run here).
 */
import java.awt.image.BufferedImage
import qupath.lib.projects.ProjectIO

Class.forName('qupath.lib.images.servers.ImageServers')   // registers the project JSON adapters
def script = new File(args[0])
def project = ProjectIO.loadProject(new File(args[1]), BufferedImage)
boolean save = args[2] == 'save'
String[] scriptArgs = args.length > 3 ? args[3..-1] as String[] : new String[0]
for (entry in project.getImageList()) {
    def imageData = entry.readImageData()
    def binding = new Binding()
    binding.setVariable('args', scriptArgs)
    binding.setVariable('getCurrentImageData', { -> imageData })
    binding.setVariable('getProject', { -> project })
    binding.setVariable('getProjectEntry', { -> entry })
    binding.setVariable('getQuPath', { -> null })
    new GroovyShell(binding).evaluate(script)
    if (save && imageData.isChanged())
        entry.saveImageData(imageData)
}
