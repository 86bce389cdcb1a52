# The pinned versions of the client libraries whose own test suites tests/clients/run.sh runs, and
# of what those suites need. The one place they are set; run.sh downloads exactly these.
#
# amqplib: 2.2.0 is the newest release whose npm tarball still ships test/ (2.2.1 and later publish
# only lib/; tests/node uses 2.3.1, whose tests are not in any published package).
AMQPLIB_VERSION=2.2.0
CLAIRE_VERSION=0.4.1     # amqplib's devDependency used by its codec/frame property tests
AMQP_VERSION=5.4.2       # py-amqp
KOMBU_VERSION=5.7.0
VINE_VERSION=5.1.0       # the one runtime dependency of py-amqp and kombu
PYTEST_VERSION=9.2.0
