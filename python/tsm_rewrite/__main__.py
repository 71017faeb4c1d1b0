"""`python -m tsm_rewrite ARGS`: the bundled binary, as `tsm-rewrite ARGS`."""

import os
import sys

from . import find_binary

if __name__ == "__main__":
    binary = find_binary()
    if sys.platform == "win32":
        import subprocess
        sys.exit(subprocess.call([binary, *sys.argv[1:]]))
    os.execvp(binary, [binary, *sys.argv[1:]])
