import pytest
from rest_framework.test import APIClient

from leads.roles import ADMIN, MARKETING, SALES

from .factories import UserFactory


@pytest.fixture
def rep(db):
    return UserFactory(username="rep", roles=[SALES])


@pytest.fixture
def other_rep(db):
    return UserFactory(username="rep2", roles=[SALES])


@pytest.fixture
def marketer(db):
    return UserFactory(username="marketer", roles=[MARKETING])


@pytest.fixture
def admin_user(db):
    return UserFactory(username="boss", roles=[ADMIN])


@pytest.fixture
def no_role_user(db):
    return UserFactory(username="outsider")


def _logged_in(client, user):
    client.force_login(user)
    return client


@pytest.fixture
def rep_client(client, rep):
    return _logged_in(client, rep)


@pytest.fixture
def marketer_client(client, marketer):
    return _logged_in(client, marketer)


@pytest.fixture
def api(db):
    return APIClient()


@pytest.fixture
def marketer_api(api, marketer):
    api.force_authenticate(marketer)
    return api


@pytest.fixture
def rep_api(api, rep):
    api.force_authenticate(rep)
    return api


@pytest.fixture
def celery_worker_process(transactional_db, tmp_path):
    """A real Celery worker process sharing the test database (data must be committed)."""
    from .worker import WorkerProcess, purge_broker

    purge_broker()
    worker = WorkerProcess(tmp_path).start()
    yield worker
    worker.stop()
