from sortsight.cli import main

main()
