import RelayServer

await DaemonCommand.runFromCommandLine()
