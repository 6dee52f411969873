import Foundation

/// Reads a rules file (JSON, `docs/SERIES_RULES.md`), refusing anything it
/// does not understand with a message that names the rule and the key: an
/// operator's typo must stop the start, not silently triage everything.
extension SeriesRules {
    static func parse(_ data: Data) throws(SeriesRulesError) -> SeriesRules {
        let root: [String: Any]
        do {
            guard let object = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
                throw SeriesRulesError("the file must hold one JSON object")
            }
            root = object
        } catch let error as SeriesRulesError {
            throw error
        } catch {
            throw SeriesRulesError("the file is not valid JSON")
        }
        let known: Set = ["name", "rules", "axialToleranceDegrees", "minimumSlices", "coverageMinimumSlices",
                          "preferredSliceThickness", "softKernels", "sharpKernels"]
        if let key = root.keys.sorted().first(where: { !known.contains($0) }) { throw SeriesRulesError("unknown key '\(key)'") }
        guard let list = root["rules"] as? [Any], !list.isEmpty else { throw SeriesRulesError("'rules' must be a non-empty list") }
        var rules: [Rule] = []
        for (index, item) in list.enumerated() {
            rules.append(try rule(item, number: index + 1))
        }
        var result = SeriesRules(name: (root["name"] as? String) ?? "rules file", rules: rules)
        if let value = root["axialToleranceDegrees"] {
            guard let degrees = number(value), (0...90).contains(degrees) else {
                throw SeriesRulesError("'axialToleranceDegrees' must be a number from 0 to 90")
            }
            result.axialToleranceDegrees = degrees
        }
        for (key, path) in [("minimumSlices", \SeriesRules.minimumSlices), ("coverageMinimumSlices", \.coverageMinimumSlices)] {
            guard let value = root[key] else { continue }
            guard let count = number(value), count >= 1, count == count.rounded(), count <= 100_000 else {
                throw SeriesRulesError("'\(key)' must be an integer of at least 1")
            }
            result[keyPath: path] = Int(count)
        }
        if let value = root["preferredSliceThickness"] {
            guard let mm = number(value), mm > 0 else { throw SeriesRulesError("'preferredSliceThickness' must be a positive number") }
            result.preferredSliceThickness = mm
        }
        result.softKernels = try pattern(root["softKernels"], "'softKernels'")
        result.sharpKernels = try pattern(root["sharpKernels"], "'sharpKernels'")
        return result
    }

    static func load(path: String) throws(SeriesRulesError) -> SeriesRules {
        guard let data = FileManager.default.contents(atPath: path) else { throw SeriesRulesError("the file cannot be read") }
        return try parse(data)
    }

    static let `default`: SeriesRules = {
        do {
            return try parse(Data(defaultJSON.utf8))
        } catch {
            fatalError("the built-in series rules do not parse: \((error as? SeriesRulesError)?.message ?? "")")
        }
    }()

    private static func rule(_ item: Any, number: Int) throws(SeriesRulesError) -> Rule {
        guard let object = item as? [String: Any] else { throw SeriesRulesError("rule \(number) must be a JSON object") }
        let name = (object["name"] as? String) ?? "rule \(number)"
        let label = "rule \(number) ('\(name)')"
        if let key = object.keys.sorted().first(where: { !["name", "when", "skip", "triage"].contains($0) }) {
            throw SeriesRulesError("\(label): unknown key '\(key)'")
        }
        let condition = try self.condition(object["when"] ?? [String: Any](), in: label)
        switch (object["skip"], object["triage"]) {
        case (let slug as String, nil):
            guard isSlug(slug) else { throw SeriesRulesError("\(label): 'skip' must be a reason slug of a-z, 0-9 and '-'") }
            return Rule(name: name, when: condition, skip: slug)
        case (nil, let triage as Bool) where triage:
            return Rule(name: name, when: condition, skip: nil)
        default:
            throw SeriesRulesError("\(label): give either \"skip\": \"reason\" or \"triage\": true")
        }
    }

    /// An object's keys are all required (`all`); `all`, `any` and `not` nest.
    private static func condition(_ value: Any, in label: String) throws(SeriesRulesError) -> Condition {
        guard let object = value as? [String: Any] else { throw SeriesRulesError("\(label): a condition must be a JSON object") }
        var parts: [Condition] = []
        for key in object.keys.sorted() {
            let value = object[key]!
            let context = "\(label), '\(key)'"
            switch key {
            case "all", "any":
                guard let list = value as? [Any] else { throw SeriesRulesError("\(context) must be a list of conditions") }
                var inner: [Condition] = []
                for item in list { inner.append(try condition(item, in: label)) }
                parts.append(key == "all" ? .all(inner) : .any(inner))
            case "not":
                parts.append(.not(try condition(value, in: label)))
            case "modality", "sopClass", "imageType":
                guard let list = value as? [String], !list.isEmpty else { throw SeriesRulesError("\(context) must be a list of strings") }
                parts.append(key == "modality" ? .modality(list.map { $0.uppercased() })
                             : key == "imageType" ? .imageType(list.map { $0.uppercased() }) : .sopClass(list))
            case "orientation":
                guard let list = value as? [String], !list.isEmpty else { throw SeriesRulesError("\(context) must be a list of strings") }
                var orientations: [Orientation] = []
                for item in list {
                    guard let orientation = Orientation(rawValue: item) else {
                        throw SeriesRulesError("\(context): '\(item)' is not one of \(Orientation.allCases.map(\.rawValue).joined(separator: ", "))")
                    }
                    orientations.append(orientation)
                }
                parts.append(.orientation(orientations))
            case "sliceThickness":
                guard let range = value as? [String: Any], !range.isEmpty, range.keys.allSatisfy(["min", "max"].contains),
                      range.values.allSatisfy({ number($0) != nil })
                else { throw SeriesRulesError("\(context) must be an object with numbers 'min' and/or 'max'") }
                parts.append(.sliceThickness(min: range["min"].flatMap(number), max: range["max"].flatMap(number)))
            case "convolutionKernel", "seriesDescription", "bodyPartExamined":
                let compiled = try pattern(value, context)!
                parts.append(key == "convolutionKernel" ? .convolutionKernel(compiled)
                             : key == "seriesDescription" ? .seriesDescription(compiled) : .bodyPartExamined(compiled))
            case "hasPixelData", "decodable":
                guard let flag = value as? Bool else { throw SeriesRulesError("\(context) must be true or false") }
                parts.append(key == "hasPixelData" ? .hasPixelData(flag) : .decodable(flag))
            default:
                throw SeriesRulesError("\(label): unknown condition '\(key)'")
            }
        }
        return parts.count == 1 ? parts[0] : .all(parts)
    }

    private static func pattern(_ value: Any?, _ context: String) throws(SeriesRulesError) -> Pattern? {
        guard let value else { return nil }
        guard let source = value as? String, !source.isEmpty else { throw SeriesRulesError("\(context) must be a regular expression string") }
        do {
            return try Pattern(source)
        } catch {
            throw SeriesRulesError("\(context): '\(source)' is not a valid regular expression")
        }
    }

    /// JSON numbers arrive as NSNumber (on Linux, `is Bool` and `as? Int` do not tell them apart reliably).
    private static func number(_ value: Any) -> Double? {
        (value as? NSNumber).map(\.doubleValue).flatMap { $0.isFinite ? $0 : nil }
    }

    private static func isSlug(_ text: String) -> Bool {
        !text.isEmpty && text.utf8.count <= 64 && text.utf8.allSatisfy {
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains($0) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) || $0 == UInt8(ascii: "-")
        }
    }
}

struct SeriesRulesError: Error, Sendable {
    var message: String
    init(_ message: String) { self.message = message }
}
