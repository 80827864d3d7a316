import Testing

/// Every test that starts a daemon runs inside this suite, one at a time: each daemon wants the CPU to itself.
@Suite(.serialized, .timeLimit(.minutes(5))) enum DaemonSuite {}
