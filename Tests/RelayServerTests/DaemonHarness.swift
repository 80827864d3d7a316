import Testing

/// Every relay test that starts a daemon runs inside this suite, one at a time, and `make test` runs the CLI's
/// (`DaemonSuiteForCLI`) after it rather than beside it: each daemon wants the CPU to itself.
@Suite(.serialized, .timeLimit(.minutes(5))) enum DaemonSuite {}
