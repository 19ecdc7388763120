"""CR 2.3 Use control for portable and mobile devices (no component requirement at any SL).

IEC 62443-4-2 sets no component-level requirement here (the control is a system requirement, SR 2.3, met
by the site's procedures and zone design). No test judges the row: the rollup marks it n/a from the
catalogue, whatever the target.
"""
