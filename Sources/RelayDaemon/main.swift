import Foundation
import RelayServer

// Everything either tool writes is private: keys, profiles, the database and its backups.
umask(0o077)

await DaemonCommand.runFromCommandLine()
