"""The floor every other package stands on; it imports nothing of ours.

contract.py  what a digit and a model are: sizes, class labels, tensor names, block size, caps
errors.py    errors a user can cause, and the exit code each ends with
files.py     what a path names, atomic writes, locked outputs
interrupts.py Ctrl-C and SIGTERM: the handler records, the loops ask
memory.py    the address-space limit (ulimit -v) the process runs under
"""
