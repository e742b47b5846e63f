"""Blinker signals matching the hook decorators, for code that prefers to subscribe."""

from blinker import Namespace

_signals = Namespace()

#: Sent with ``plan`` before a deploy applies anything; a receiver that raises blocks it.
before_deploy = _signals.signal("flask-rollback.before-deploy")
#: Sent with ``plan`` and ``deploy`` (the record) after a deploy applied its migrations.
after_deploy = _signals.signal("flask-rollback.after-deploy")
#: Sent with ``plan`` and ``deploy`` before a rollback reverts anything; raising blocks it.
before_rollback = _signals.signal("flask-rollback.before-rollback")
