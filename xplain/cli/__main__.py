from xplain.cli import app

app()
