"""The toolkit's contract: the one place for each fact that several packages share.

Digits are uint8 arrays [N, 28, 28], white ink on black, with int labels 0-9. An exported model
takes exactly that as `image` and gives `probabilities` [N, 10], `label` [N] and `digit_score`
[N] (0..1, how much like a digit; models exported before it give the first two only).
"""

IMAGE_SIZE = 28  # an MNIST digit is IMAGE_SIZE x IMAGE_SIZE pixels
PIXELS = IMAGE_SIZE * IMAGE_SIZE  # 784: a digit flattened
NUM_CLASSES = 10
CLASS_LABELS = tuple(str(digit) for digit in range(NUM_CLASSES))

# The exported model's tensors (exporter/convert.py writes them; batch/model.py reads them).
INPUT_NAME = "image"
PROBABILITIES = "probabilities"
LABEL = "label"
DIGIT_SCORE = "digit_score"
OUTPUT_NAMES = (PROBABILITIES, LABEL, DIGIT_SCORE)

# Images per unit of work: a decode-and-classify task in a worker process, a Ray
# shard's inner step, and a run of paths from a folder's walk.
IMAGE_BLOCK = 256

# Caps on what is read whole, so a hostile input fails with a message, not an out-of-memory kill.
MAX_IMAGE_FILE_BYTES = 64 * 2**20  # an image file larger than this is refused before it is read
MAX_IMAGE_PIXELS = 40_000_000  # width x height from the header, checked before decoding
MAX_DATA_FILE_BYTES = 4 * 2**30  # a training-data file (IDX, .npz member) that unpacks to more is not MNIST
