"""Upper limits of the numeric run options shared by the CLI and the library (``--batch``, ``--threads``, ...):
past them a value is a typo, not a setting."""

MAX_BATCH = 4096
MAX_THREADS = 1024
MAX_STREAMS = 64
