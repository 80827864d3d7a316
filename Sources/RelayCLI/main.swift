import RelayCommands

await Amane.runFromCommandLine()
