from ironhold.cli.main import run

run()
