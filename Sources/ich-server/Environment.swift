import Foundation

/// A setting's value: the flag if given, else `ICH_<NAME>` from the environment, else the default.
func setting<T: LosslessStringConvertible>(_ flag: T?, _ variable: String, _ fallback: T) throws -> T {
    if let flag { return flag }
    guard let text = ProcessInfo.processInfo.environment[variable] else { return fallback }
    guard let value = T(text) else { throw SettingError(variable: variable) }
    return value
}

/// A setting that is off unless given: the flag, else `ICH_<NAME>` (empty counts as unset), else nil.
func setting<T: LosslessStringConvertible>(_ flag: T?, _ variable: String) throws -> T? {
    if let flag { return flag }
    guard let text = ProcessInfo.processInfo.environment[variable], !text.isEmpty else { return nil }
    guard let value = T(text) else { throw SettingError(variable: variable) }
    return value
}

/// A repeatable setting: the flags if any, else the comma-separated `ICH_<NAME>` (blanks dropped).
func listSetting(_ flags: [String], _ variable: String) -> [String] {
    guard flags.isEmpty else { return flags }
    return (ProcessInfo.processInfo.environment[variable] ?? "").split(separator: ",")
        .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
}

struct SettingError: Error, CustomStringConvertible {
    var variable: String
    var description: String { "The environment variable \(variable) has a value of the wrong kind." }
}
