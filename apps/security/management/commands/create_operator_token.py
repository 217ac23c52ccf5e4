"""manage.py create_operator_token USERNAME → prints an operator token once.

The token authenticates as USERNAME on /api/v1/ops/ (``Authorization: Bearer
<token>``) for as long as that user is active staff.
"""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from apps.security.services import OperatorTokenError, issue_operator_token


class Command(BaseCommand):
    help = "Issue an operator API token for a staff user; prints the token (shown only this once)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="", help="a label for operators (what the token is for)")

    def handle(self, *args, username: str, name: str, **options) -> None:
        User = get_user_model()
        user = User.objects.filter(**{User.USERNAME_FIELD: username}).first()
        if user is None:
            raise CommandError(f"no user named {username!r}")
        try:
            issued = issue_operator_token(user, name=name)
        except OperatorTokenError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(issued.secret)
