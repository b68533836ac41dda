"""The floor every other package stands on; it imports nothing of ours.

contract.py  what a digit and a model are: sizes, class labels, tensor names, block size, caps
errors.py    errors a user can cause, and the exit code each ends with
atomic.py    files written whole (or not at all), strict JSON
bundled.py   the bundled models' names and folder
files.py     what a path names, locked outputs, write errors
interrupts.py Ctrl-C and SIGTERM: the handler records, the loops ask
memory.py    the address-space limit (ulimit -v) the process runs under
options.py   numeric options parsed (NaN, infinity and ranges refused)
terminal.py  outside text made safe to print
"""
