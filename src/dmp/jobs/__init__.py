"""System work: jobs that run under a named system actor (``system:<job>``), each audited in its
own transaction: migrations, audit verification, key checks and rotation, the directory import,
the statistics recount, client registration and the demonstration data."""
