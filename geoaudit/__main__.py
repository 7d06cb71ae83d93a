from geoaudit.cli import main

main()
