# Two commands on a fresh machine with Python 3.11 and pip: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PORT ?= 8000
SEED ?= 42
TEST_VAR := $(CURDIR)/var/test

.PHONY: install run test lint clean bench-scoring bench-nurture bench-load

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py createcachetable
	@echo "Demo users (role, login, password):"
	$(BIN)/python manage.py create_demo_users
	$(BIN)/python manage.py seed_demo --seed $(SEED)
	$(BIN)/python manage.py rescore_all --if-unscored
	@echo
	@echo "  MQL CRM: http://127.0.0.1:$(PORT)/   (API docs: /api/docs/, admin: /admin/)"
	@echo "  Database: $${DATABASE_URL:-SQLite at var/db.sqlite3}; broker: $${REDIS_URL:-filesystem queue in var/broker}"
	@echo "  Mail goes to: var/sent-mail/ (file backend).  Ctrl-C stops the web server, worker and beat."
	@echo
	PORT=$(PORT) SITE_URL=$${SITE_URL:-http://127.0.0.1:$(PORT)} $(BIN)/honcho --procfile Procfile start

# Every test. Runs on SQLite and the filesystem broker unless DATABASE_URL/REDIS_URL are set;
# tests marked `worker` start real Celery worker processes either way.
test: install
	rm -rf $(TEST_VAR) && mkdir -p $(TEST_VAR)
	VAR_DIR=$(TEST_VAR) $(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/python manage.py makemigrations --check --dry-run
	DJANGO_ENV=production DJANGO_ALLOWED_HOSTS=crm.example.com \
	DJANGO_SECRET_KEY=$$($(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(50))') \
		$(BIN)/python manage.py check --deploy --fail-level WARNING

clean:
	rm -rf var .pytest_cache

# Benchmarks print their figures; none is a test. They need PostgreSQL and Redis.
# Timed as deployed: DEBUG off (no query log), the pages served over plain HTTP.
BENCH_PRODUCTION = DJANGO_DEBUG=0 DJANGO_SECURE_SSL_REDIRECT=0 DJANGO_ALLOWED_HOSTS=testserver,127.0.0.1 \
	DJANGO_SECRET_KEY=bench-only-not-a-deployment-secret-0123456789abcdefghijklmnop
BENCH_DB ?= postgres://postgres@127.0.0.1:5432/bench_scoring
BENCH_REDIS ?= redis://127.0.0.1:6379/14
bench-scoring: install
	psql "$(dir $(BENCH_DB))postgres" -tAc "SELECT 1 FROM pg_database WHERE datname='$(notdir $(BENCH_DB))'" | grep -q 1 \
		|| psql "$(dir $(BENCH_DB))postgres" -c "CREATE DATABASE $(notdir $(BENCH_DB))"
	DATABASE_URL=$(BENCH_DB) REDIS_URL=$(BENCH_REDIS) $(BIN)/python manage.py migrate --noinput -v0
	$(BENCH_PRODUCTION) $(BIN)/python manage.py collectstatic --noinput -v0
	$(BENCH_PRODUCTION) DATABASE_URL=$(BENCH_DB) REDIS_URL=$(BENCH_REDIS) $(BIN)/python manage.py bench_scoring $(BENCH_ARGS)

BENCH_NURTURE_DB ?= postgres://postgres@127.0.0.1:5432/bench_nurture
bench-nurture: install
	psql "$(dir $(BENCH_NURTURE_DB))postgres" -tAc "SELECT 1 FROM pg_database WHERE datname='$(notdir $(BENCH_NURTURE_DB))'" | grep -q 1 \
		|| psql "$(dir $(BENCH_NURTURE_DB))postgres" -c "CREATE DATABASE $(notdir $(BENCH_NURTURE_DB))"
	DATABASE_URL=$(BENCH_NURTURE_DB) REDIS_URL=$(BENCH_REDIS) $(BIN)/python manage.py migrate --noinput -v0
	DATABASE_URL=$(BENCH_NURTURE_DB) REDIS_URL=$(BENCH_REDIS) $(BIN)/python manage.py bench_nurture $(BENCH_ARGS)

BENCH_LOAD_DB ?= postgres://postgres@127.0.0.1:5432/bench_load
BENCH_LOAD_REDIS ?= redis://127.0.0.1:6379/13
bench-load: install
	psql "$(dir $(BENCH_LOAD_DB))postgres" -tAc "SELECT 1 FROM pg_database WHERE datname='$(notdir $(BENCH_LOAD_DB))'" | grep -q 1 \
		|| psql "$(dir $(BENCH_LOAD_DB))postgres" -c "CREATE DATABASE $(notdir $(BENCH_LOAD_DB))"
	DATABASE_URL=$(BENCH_LOAD_DB) REDIS_URL=$(BENCH_LOAD_REDIS) $(BIN)/python manage.py migrate --noinput -v0
	DJANGO_DEBUG=0 DJANGO_SECRET_KEY=collectstatic DJANGO_ALLOWED_HOSTS=127.0.0.1 $(BIN)/python manage.py collectstatic --noinput -v0
	DATABASE_URL=$(BENCH_LOAD_DB) REDIS_URL=$(BENCH_LOAD_REDIS) $(BIN)/python manage.py bench_load $(BENCH_ARGS)
