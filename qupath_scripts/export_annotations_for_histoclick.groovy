/*
 * export_annotations_for_histoclick.groovy
 * Export annotations as QuPath GeoJSON, and optionally image tiles with label masks, for
 * histoclick (QuPath 0.5 and 0.6).
 *
 * Usage
 *   Current image: Automate > Script editor, File > Open... this script, edit the settings below,
 *                  then Run.
 *   Whole project: Run > Run for project (without save): the script only reads the project, so
 *                  nothing needs saving and "without save" leaves every image's data untouched.
 *   Headless:      QuPath script --project=/path/to/project.qpproj \
 *                      --args=output=/path/to/out --args=tiles=true export_annotations_for_histoclick.groovy
 *                  (each --args=name=value overrides the setting of that name below:
 *                  output, classes (comma-separated), tiles, downsample, tile_size).
 *
 * Writes under OUTPUT (default: <project folder>/histoclick_export), one name per project entry
 * "<image name>-<entry id>" (characters QuPath strips from file names removed), the rule of
 * `histoclick qupath export` (histoclick.qupath.naming), so slide.svs and slide.ndpi, or two
 * series of one file, never overwrite each other:
 *   <name>.geojson        the image's annotations (FeatureCollection, level-0 pixels, top-left
 *                         origin) -> histoclick.qupath.read_geojson(...) or
 *                         histoclick.datasets.qupath.QuPathDataset.from_geojson(slide, file, class)
 *   tiles/<name>/images/<tile>.png and tiles/<name>/masks/<tile>.png   (when EXPORT_TILES)
 *                         TILE_SIZE x TILE_SIZE tiles at DOWNSAMPLE that touch an exported
 *                         annotation; the tile name holds its level-0 region. Masks are 8-bit
 *                         grayscale: 0 is background (black), the i-th class of the project's class
 *                         list (or of CLASSES) is i, the same in every image; labels.json says which.
 *                         -> histoclick.datasets.folders.FolderDataset("tiles/<name>")
 * Existing files of the same name are replaced; the project itself is not modified.
 */

import qupath.lib.common.ColorTools
import qupath.lib.common.GeneralTools
import qupath.lib.images.servers.LabeledImageServer
import qupath.lib.images.writers.TileExporter
import qupath.lib.io.PathIO

String OUTPUT = ''               // empty: <project folder>/histoclick_export
List<String> CLASSES = []        // classes to export, e.g. ['Tumor']; empty: the project's classes
boolean EXPORT_TILES = false     // also write image tiles with label masks
double DOWNSAMPLE = 4.0          // level-0 pixels per tile pixel (e.g. 4.0: 10x on a 40x scan)
int TILE_SIZE = 512              // tile width and height in tile pixels

// QuPath's script helpers: the only lines that need QuPath's application.
def imageData = getCurrentImageData()
def project = getProject()
def entry = getProjectEntry()

// From here on, QuPath's core classes only.
def settings = (binding.hasVariable('args') ? binding.getVariable('args') as List : [])
        .collectEntries { String arg -> arg.contains('=') ? [(arg.split('=', 2)[0]): arg.split('=', 2)[1]] : [:] }
OUTPUT = settings.output ?: OUTPUT
CLASSES = settings.classes ? settings.classes.split(',').collect { it.trim() } : CLASSES
EXPORT_TILES = settings.tiles ? settings.tiles.toBoolean() : EXPORT_TILES
DOWNSAMPLE = settings.downsample ? settings.downsample as double : DOWNSAMPLE
TILE_SIZE = settings.tile_size ? settings.tile_size as int : TILE_SIZE

if (imageData == null) {
    println 'No image is open: open an image or use Run > Run for project'
    return
}
if (!OUTPUT && project == null)
    throw new IllegalArgumentException('No project is open: set OUTPUT at the top of this script')
File outDir = OUTPUT ? new File(OUTPUT) : project.getPath().getParent().resolve('histoclick_export').toFile()
outDir.mkdirs()

String imageName = entry != null ? entry.getImageName() : imageData.getServer().getMetadata().getName()
String stem = GeneralTools.stripInvalidFilenameChars(imageName) + (entry != null ? '-' + entry.getID() : '')

def annotations = imageData.getHierarchy().getAnnotationObjects()
if (CLASSES)
    annotations = annotations.findAll { it.getPathClass() != null && it.getPathClass().toString() in CLASSES }
def geojson = new File(outDir, stem + '.geojson')
PathIO.exportObjectsAsGeoJSON(geojson, annotations, PathIO.GeoJsonExportOptions.FEATURE_COLLECTION)
println "${imageName}: ${annotations.size()} annotations -> ${geojson}"

if (!EXPORT_TILES)
    return
// One label per class for the whole project: its class list, not the classes this image happens to hold.
def classes = CLASSES ?: (project != null ? project.getPathClasses().findAll { it != null }.collect { it.toString() }
        : annotations.findAll { it.getPathClass() != null }.collect { it.getPathClass().toString() }.unique().sort())
if (!classes) {
    println "${imageName}: no classes to label, no tiles written"
    return
}
def builder = new LabeledImageServer.Builder(imageData)
        .backgroundLabel(0, ColorTools.BLACK)
        .grayscale()
        .downsample(DOWNSAMPLE)
        .multichannelOutput(false)
classes.eachWithIndex { name, i -> builder.addLabel(name, i + 1) }
def labels = builder.build()

def tileDir = new File(new File(outDir, 'tiles'), stem)
tileDir.mkdirs()
new TileExporter(imageData)
        .downsample(DOWNSAMPLE)
        .tileSize(TILE_SIZE)
        .overlap(0)
        .imageExtension('.png')
        .labeledServer(labels)
        .labeledImageExtension('.png')
        .imageSubDir('images')
        .labeledImageSubDir('masks')
        .labeledImageId('')
        .annotatedTilesOnly(true)
        .writeTiles(tileDir.getPath())
def labelFile = new File(tileDir, 'labels.json')
labelFile.text = '{"background": 0' + classes.withIndex().collect { name, i -> ", ${groovy.json.JsonOutput.toJson(name)}: ${i + 1}" }.join('') + '}\n'
println "${imageName}: tiles -> ${tileDir}, mask labels in ${labelFile}"
