"""Running the gpukmeans command in-process, for the command's tests."""

from gpukmeans import _cli


def run(capsys, *argv):
    """Run the command in-process; return ``(exit status, stdout, stderr)``."""
    status = _cli.main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return status, out, err
