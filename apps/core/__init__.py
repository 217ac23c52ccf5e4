"""The words every app shares, below all of them: domain errors, hooks, the
priority classes, secret tokens and the strict serializer base.

Not a Django app (no models, no migrations): plain modules that any app may
import. Nothing here imports an app.
"""
