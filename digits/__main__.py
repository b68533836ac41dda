from digits.cli import start

start()
