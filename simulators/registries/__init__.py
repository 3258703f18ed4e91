"""National registration authorities: Spain (DGT), France (ANTS), Germany (KBA), UK (DVLA).

One module per country (``es``, ``fr``, ``de``, ``uk``) holds what that
registry does differently (a ``vocabulary.Country``) and serves it. What the
four share, by concept:

- ``model``: the state and rules of a registry (``Registry``), no HTTP;
- ``api``: the HTTP of all four (``create_registry_app``): parse, call the
  model, serialise;
- ``records`` (the registration and its review plan), ``validation`` (what
  the authority checks), ``availability`` (maintenance windows, the 503 with
  the manual-submission fallback), ``faults`` (the domain faults' parameters),
  ``business_days`` (calendar and office hours), ``plates``, ``taxids``, and
  ``vocabulary`` (statuses, magic values, ``Country``).
"""
