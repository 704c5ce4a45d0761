"""The CPython side of python-shm.mjs: sorts the doubles in a shared-memory segment in place.

    python3 examples/python-peer.py <segment name> <count>

The segment holds `count` doubles, then one more slot where the exact sum (math.fsum) goes.
"""
import math
import sys
from array import array
from multiprocessing import resource_tracker, shared_memory

name, count = sys.argv[1], int(sys.argv[2])
if sys.version_info >= (3, 13):
    shm = shared_memory.SharedMemory(name=name, track=False)
else:
    shm = shared_memory.SharedMemory(name=name)
    # Before 3.13, attaching registers the segment with Python's resource tracker, which would
    # unlink it when this script exits; Node created it, so Node owns it.
    resource_tracker.unregister(shm._name, "shared_memory")

doubles = shm.buf.cast("d")  # a view of the segment, no copy
data = sorted(doubles[:count])
doubles[:count] = array("d", data)
doubles[count] = math.fsum(data)
print(f"python {sys.version.split()[0]}: sorted {count} doubles in segment {shm.name}", flush=True)
doubles.release()  # every view must go before close()
shm.close()
