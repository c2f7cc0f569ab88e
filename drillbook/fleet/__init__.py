"""Fleet scale: one set of features over many databases (../shared/docs/FLEET.md).

``inventory`` reads the members, ``scenarios`` lists the work a plan splits, ``execute`` runs one
member's scenarios in a child ``drillbook run``; plan, shards and the merge build on them.
"""
