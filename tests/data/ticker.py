"""A stand-in worker for supervisord tests: prints a tick, optionally exits with a code."""

import sys
import time

name = sys.argv[1] if len(sys.argv) > 1 else "ticker"
exit_after_s = float(sys.argv[2]) if len(sys.argv) > 2 else None
exit_code = int(sys.argv[3]) if len(sys.argv) > 3 else 0
t0 = time.monotonic()
i = 0
while exit_after_s is None or time.monotonic() - t0 < exit_after_s:
    print(f"{name} tick {i}", flush=True)
    print(f"{name} stderr line {i}", file=sys.stderr, flush=True)
    i += 1
    time.sleep(0.5)
sys.exit(exit_code)
