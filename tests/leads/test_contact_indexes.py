import pytest
from django.db import connection

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="index definitions of PostgreSQL")


@pytest.mark.django_db
def test_the_contact_table_carries_only_the_indexes_its_queries_use():
    # Each index is written again on every update that moves a contact's row (a rule change
    # copies thousands of scores into the queue): none is kept that no query can use.
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'leads_contact'")
        names = {name for (name,) in cursor.fetchall()}

    assert names == {
        "leads_contact_pkey",
        "leads_contact_external_id_key",  # imports and the API look external ids up exactly
        "contact_email_ci_unique",
        "leads_contact_account_id_421aa9da",
        "leads_contact_owner_id_0d170339",
        "contact_stage_mql_at_idx",
        "contact_queue_idx",
    }
