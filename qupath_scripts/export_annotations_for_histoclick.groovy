/*
 * export_annotations_for_histoclick.groovy
 * Export annotations as QuPath GeoJSON, and optionally image tiles with labelled masks, for
 * histoclick (QuPath 0.5 and 0.6).
 *
 * Usage
 *   Current image: Automate > Script editor, File > Open... this script, edit the settings below,
 *                  then Run.
 *   Whole project: Run > Run for project.
 *   Headless:      QuPath script --project=/path/to/project.qpproj export_annotations_for_histoclick.groovy
 *
 * Writes under OUTPUT (default: <project folder>/histoclick_export):
 *   <image>.geojson       the image's annotations (FeatureCollection, level-0 pixels, top-left
 *                         origin) -> histoclick.qupath.read_geojson(...) or
 *                         histoclick.datasets.qupath.QuPathDataset.from_geojson(slide, file, class)
 *   tiles/<image>/images/<tile>.png and tiles/<image>/masks/<tile>.png   (when EXPORT_TILES)
 *                         TILE_SIZE x TILE_SIZE tiles at DOWNSAMPLE that touch an exported
 *                         annotation; the tile name holds its level-0 region. Mask pixels are 0
 *                         for background and i for the i-th class (the labels are printed).
 *                         -> histoclick.datasets.folders.FolderDataset("tiles/<image>")
 * Existing files of the same name are replaced; the project itself is not modified.
 */

import qupath.lib.common.ColorTools
import qupath.lib.common.GeneralTools
import qupath.lib.images.servers.LabeledImageServer
import qupath.lib.images.writers.TileExporter
import qupath.lib.io.PathIO

String OUTPUT = ''               // empty: <project folder>/histoclick_export
List<String> CLASSES = []        // classes to export, e.g. ['Tumor']; empty: every class present
boolean EXPORT_TILES = false     // also write image tiles with labelled masks
double DOWNSAMPLE = 4.0          // level-0 pixels per tile pixel (e.g. 4.0: 10x on a 40x scan)
int TILE_SIZE = 512              // tile width and height in tile pixels

def imageData = getCurrentImageData()
if (imageData == null) {
    println 'No image is open: open an image or use Run > Run for project'
    return
}
if (!OUTPUT && getProject() == null)
    throw new IllegalArgumentException('No project is open: set OUTPUT at the top of this script')
String outDir = OUTPUT ?: buildFilePath(PROJECT_BASE_DIR, 'histoclick_export')
mkdirs(outDir)

def entry = getProjectEntry()
String imageName = entry != null ? entry.getImageName() : imageData.getServer().getMetadata().getName()
String stem = GeneralTools.stripInvalidFilenameChars(GeneralTools.getNameWithoutExtension(imageName))

def annotations = getAnnotationObjects()
if (CLASSES)
    annotations = annotations.findAll { it.getPathClass() != null && it.getPathClass().toString() in CLASSES }
def geojson = new File(outDir, stem + '.geojson')
PathIO.exportObjectsAsGeoJSON(geojson, annotations, PathIO.GeoJsonExportOptions.FEATURE_COLLECTION)
println "${imageName}: ${annotations.size()} annotations -> ${geojson}"

if (!EXPORT_TILES)
    return
def classes = CLASSES ?: annotations.findAll { it.getPathClass() != null }
        .collect { it.getPathClass().toString() }.unique().sort()
if (!classes) {
    println "${imageName}: no classified annotations, no tiles written"
    return
}
def builder = new LabeledImageServer.Builder(imageData)
        .backgroundLabel(0, ColorTools.WHITE)
        .downsample(DOWNSAMPLE)
        .multichannelOutput(false)
classes.eachWithIndex { name, i -> builder.addLabel(name, i + 1) }
def labels = builder.build()

def tileDir = buildFilePath(outDir, 'tiles', stem)
mkdirs(tileDir)
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
        .writeTiles(tileDir)
classes.eachWithIndex { name, i -> println "  mask label ${i + 1}: ${name}" }
println "${imageName}: tiles -> ${tileDir}"
