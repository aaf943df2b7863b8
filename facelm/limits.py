"""Upper limits of the numeric run options shared by the CLI and the library (``--batch``, ``--threads``, ...):
past them a value is a typo, not a setting."""

MAX_BATCH = 4096
MAX_THREADS = 1024
MAX_STREAMS = 64
MAX_TRAIN_BATCH = 65536  # `facelm train --batch-size`: a global batch, shared out over the processes
MAX_WIDTH = 8.0  # `facelm train --width`: channel multiplier (CNN-7 at 8 has about 540 M weights)
MAX_SEED = 2**63 - 1
MAX_SIGMA = 64.0  # `facelm train --sigma`: heatmap px (the papers' maps are 64 px; their sigma 1-4)
MAX_INPUT_SIZE = 512  # `facelm train --input-size`: twice the papers' 256 px
MAX_STACKS = 16  # `facelm train --stacks`: hourglasses (the papers stack 2-4)
