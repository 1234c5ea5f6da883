from hybridfast.cli import main

main()
