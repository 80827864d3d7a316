/// The release both binaries print for `--version`; the daemon logs it when it starts listening.
public enum RelayVersion {
    public static let current = "0.1.0"
}
