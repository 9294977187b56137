"""Interoperability with other libraries' formats (PEFT adapters), both ways.

May import: ``promptopt.data``, ``promptopt.engine``. Never a plugin, the run pipeline, a suite or a report.
"""
