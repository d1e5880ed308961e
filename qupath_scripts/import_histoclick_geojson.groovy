/*
 * import_histoclick_geojson.groovy
 * Add the annotations of histoclick GeoJSON files to QuPath images (QuPath 0.5 and 0.6).
 *
 * Usage
 *   One image:    open the image, Automate > Script editor, File > Open... this script, set SOURCE
 *                 below to a .geojson file (or to a folder, see next line), then Run.
 *   Whole project: set SOURCE to a folder holding one "<image name>.geojson" per image (as written
 *                 by `histoclick qupath export` or histoclick.qupath.write_geojson), then
 *                 Run > Run for project. Images without a file are skipped.
 *   Headless:     QuPath script --project=/path/to/project.qpproj --save \
 *                     --args=/path/to/geojson_folder import_histoclick_geojson.groovy
 *                 (--args overrides SOURCE; --save writes each image's data.)
 *
 * File names tried in the folder, in order: "<image name>.geojson", then the image name without
 * its extension (QuPath's rule, e.g. "slide.svs" -> "slide.geojson"), then without its last suffix.
 *
 * Safe to run twice: objects whose UUID is already in the image are skipped. Existing objects are
 * never changed or removed. Classes missing from the project's class list are added with the
 * colour given in the file. In the GUI, save the image afterwards (File > Save, Ctrl+S);
 * Run for project saves by itself.
 */

import qupath.lib.common.GeneralTools
import qupath.lib.io.PathIO

// A .geojson file, or a folder with one "<image name>.geojson" per image.
String SOURCE = '/path/to/histoclick_geojson'

def cliArgs = binding.hasVariable('args') ? (binding.getVariable('args') as List) : []
def source = new File(cliArgs ? cliArgs[0] as String : SOURCE)

def imageData = getCurrentImageData()
if (imageData == null) {
    println 'No image is open: open an image or use Run > Run for project'
    return
}
def entry = getProjectEntry()
String imageName = entry != null ? entry.getImageName() : imageData.getServer().getMetadata().getName()

File file = source
if (source.isDirectory()) {
    def stems = [imageName, GeneralTools.getNameWithoutExtension(imageName)]
    if (imageName.contains('.'))
        stems << imageName.substring(0, imageName.lastIndexOf('.'))
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

def project = getProject()
if (project != null) {
    def known = project.getPathClasses() as List
    def missing = fresh.collect { it.getPathClass() }.findAll { it != null && !known.contains(it) }.unique()
    if (missing) {
        project.setPathClasses(known + missing)
        project.syncChanges()
    }
}

addObjects(fresh)
println "${imageName}: added ${fresh.size()} objects from ${file} " +
        "(${objects.size() - fresh.size()} already present)"
