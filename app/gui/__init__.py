"""The desktop GUI (PySide6 + pyqtgraph). Never imports a framework: models come as plain data.

PySide6-Essentials is pinned below 6.12: 6.12.0 on Python 3.11 drops a reference to None on
every Qt call returning void, and the process aborts after a few thousand calls
("Fatal Python error: none_dealloc"); 6.11.3 and 6.10.3 do not (tests/app/gui checks it).
"""
