"""manage.py build_tiny_model PATH: the tiny local model, built into PATH.

Prints only the model's absolute path (the value for a model's adapter_config
"path"); a PATH that already holds a built model is left as it is. The
model's weights are random: its text is meaningless by design (see
apps.catalog.tiny_model).
"""

from django.core.management.base import BaseCommand, CommandError

from apps.catalog.tiny_model import TinyModelError, build_tiny_model


class Command(BaseCommand):
    help = "Build the tiny random-weight Llama model and its tokenizer into PATH (nothing is downloaded)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("path", help="directory to create; left as it is if it already holds the model")

    def handle(self, *args, **options) -> None:
        try:
            path = build_tiny_model(options["path"])
        except (TinyModelError, OSError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(str(path))
