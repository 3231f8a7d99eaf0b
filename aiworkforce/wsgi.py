"""WSGI entry point (for gunicorn, uwsgi or mod_wsgi in production)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aiworkforce.settings")
application = get_wsgi_application()
