cd "$(git rev-parse --show-toplevel)"
for TH in 1 2; do
  for BUSY in 0 4; do
    pids=""
    for i in $(seq 1 $BUSY); do (while :; do :; done) & pids="$pids $!"; done
    TH=$TH BUSY=$BUSY .venv/bin/python flashoptim/benchmarks/cpu-2026-12-01/clock_probe.py
    for p in $pids; do kill $p; done
  done
done
