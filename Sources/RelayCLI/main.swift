import Foundation
import RelayCommands

// Everything either tool writes is private: keys, profiles, the database and its backups.
umask(0o077)

await Amane.runFromCommandLine()
