/*
 * import_histoclick_geojson.groovy
 * Add the annotations of histoclick GeoJSON files to QuPath images (QuPath 0.5 and 0.6).
 *
 * Usage
 *   One image:    open the image, Automate > Script editor, File > Open... this script, set SOURCE
 *                 below to a .geojson file (or to a folder, see next line), then Run.
 *   Whole project: set SOURCE to a folder holding one file per image (as written by
 *                 `histoclick qupath export` or export_annotations_for_histoclick.groovy), then
 *                 Run > Run for project (with save). Images without a file are skipped.
 *   Headless:     QuPath script --project=/path/to/project.qpproj --save \
 *                     --args=/path/to/geojson_folder import_histoclick_geojson.groovy
 *                 (--args overrides SOURCE; --save writes each image's data.)
 *
 * File names tried in the folder, in order: "<image name>-<entry id>.geojson" (histoclick's rule,
 * histoclick.qupath.naming: one file per project entry), then "<image name>.geojson", then the
 * image name without its extension (QuPath's stripExtension, e.g. "slide.svs" -> "slide.geojson").
 *
 * Safe to run twice: objects whose UUID is already in the image are skipped. Existing objects are
 * never changed or removed. Classes missing from the project's class list are added with the
 * colour given in the file: in the GUI through QuPath's own class list (so the Annotations tab
 * shows them at once and QuPath saves them with the project), headless in the project directly.
 * In the GUI, save the image afterwards (File > Save, Ctrl+S); Run for project (with save) saves
 * by itself.
 */

import qupath.lib.common.GeneralTools
import qupath.lib.io.PathIO

// A .geojson file, or a folder with one "<image name>-<entry id>.geojson" per image.
String SOURCE = '/path/to/histoclick_geojson'

// QuPath's script helpers: the only lines that need QuPath's application.
def imageData = getCurrentImageData()
def project = getProject()
def entry = getProjectEntry()
def gui = getQuPath()            // null when run headless

// From here on, QuPath's core classes only (and the GUI's class list when there is a GUI).
def cliArgs = binding.hasVariable('args') ? (binding.getVariable('args') as List) : []
def source = new File(cliArgs ? cliArgs[0] as String : SOURCE)

if (imageData == null) {
    println 'No image is open: open an image or use Run > Run for project'
    return
}
String imageName = entry != null ? entry.getImageName() : imageData.getServer().getMetadata().getName()

File file = source
if (source.isDirectory()) {
    def stems = [imageName, GeneralTools.stripExtension(imageName)]
    if (entry != null)
        stems.add(0, GeneralTools.stripInvalidFilenameChars(imageName) + '-' + entry.getID())
    file = stems.unique().collect { new File(source, it + '.geojson') }.find { it.isFile() }
    if (file == null) {
        println "${imageName}: no GeoJSON for this image in ${source}, skipped"
        return
    }
} else if (!source.isFile()) {
    throw new IllegalArgumentException(
        "${source} is neither a GeoJSON file nor a folder: set SOURCE at the top of this script")
}

def objects = PathIO.readObjects(file)
def hierarchy = imageData.getHierarchy()
def present = hierarchy.getFlattenedObjectList(null).collect { it.getID() } as Set
def fresh = objects.findAll { !present.contains(it.getID()) }

def missing = fresh.collect { it.getPathClass() }.findAll { it != null }.unique()
if (gui != null) {
    // The GUI's class list is the project's: QuPath writes it to the project when it changes.
    def available = gui.getAvailablePathClasses()
    Class.forName('javafx.application.Platform').runLater({
        available.addAll(missing.findAll { !available.contains(it) })
    } as Runnable)
} else if (project != null) {
    def known = project.getPathClasses() as List
    missing = missing.findAll { !known.contains(it) }
    if (missing) {
        project.setPathClasses(known + missing)
        project.syncChanges()
    }
}

hierarchy.addObjects(fresh)
println "${imageName}: added ${fresh.size()} objects from ${file} " +
        "(${objects.size() - fresh.size()} already present)"
