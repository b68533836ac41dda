from digits.cli import main

main()
