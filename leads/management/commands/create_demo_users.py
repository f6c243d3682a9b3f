from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand

from leads.roles import ADMIN, MARKETING, SALES

DEMO_PASSWORD = "demo-pass-2026"
DEMO_USERS = [
    ("rep", "Riley", "Rep", SALES),
    ("rep2", "Sam", "Seller", SALES),
    ("marketer", "Morgan", "Marketer", MARKETING),
    ("admin", "Alex", "Admin", ADMIN),
]


class Command(BaseCommand):
    help = "Create the demo users (a sales rep, a second rep, a marketer, an admin); reuses existing ones."

    def handle(self, *args, **options):
        User = get_user_model()
        for username, first, last, role in DEMO_USERS:
            user, created = User.objects.get_or_create(
                username=username,
                defaults={"first_name": first, "last_name": last, "email": f"{username}@crm.example"},
            )
            if created:
                user.set_password(DEMO_PASSWORD)
                user.is_staff = role == ADMIN
                user.is_superuser = role == ADMIN
                user.save()
            user.groups.add(Group.objects.get(name=role))
            state = "created" if created else "exists"
            self.stdout.write(f"  {role:<10} login: {username:<9} password: {DEMO_PASSWORD}   ({state})")
