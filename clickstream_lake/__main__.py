from clickstream_lake.cli import main

main()
