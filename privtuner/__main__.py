from privtuner.cli import run

run()
