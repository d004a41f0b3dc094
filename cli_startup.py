"""Imported first by the command scripts: a Ctrl-C while torch and the rest are still being imported
(a few seconds; a user who notices a wrong option stops the run at once) ends the command with
``error: interrupted`` and exit status 130, as it does later, instead of a Python traceback.

Only when a command script is what runs (``__main__``): imported as a library, nothing changes.
``cli_common.run`` puts Python's own handler back once the command starts.
"""

import signal
import sys


def quiet_exit(signum, frame):  # noqa: ARG001 - the signal handler's signature
    sys.stderr.write('error: interrupted\n')
    sys.stderr.flush()
    raise SystemExit(130)


_main = sys.modules.get('__main__')
if _main is not None and getattr(_main, '__file__', None) and \
        _main.__file__.endswith(('projector.py', 'projector_video.py', 'morph.py')):
    signal.signal(signal.SIGINT, quiet_exit)
