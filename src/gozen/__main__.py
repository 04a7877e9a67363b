from gozen.cli import app

app(prog_name="gozen")
