// Find the first syntax error in a JSON text, with its line and column.
// JSON.parse reports no position for some errors (V8 in Chromium 156 and
// Node 20 says only "Unexpected token '}', ... is not valid JSON"), so this
// scanner follows RFC 8259's grammar itself.

class JsonSyntaxError extends Error {
  constructor(message, position) {
    super(message);
    this.position = position;
  }
}

const WHITESPACE = new Set([" ", "\t", "\n", "\r"]);
const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
const LITERALS = ["true", "false", "null"];

function scan(text) {
  let index = 0;

  const fail = (message) => { throw new JsonSyntaxError(message, index); };
  const skipWhitespace = () => { while (WHITESPACE.has(text[index])) index += 1; };
  const describe = () => (index >= text.length ? "the end of the text" : `'${text[index]}'`);

  function expect(char, expected) {
    skipWhitespace();
    if (text[index] !== char) fail(`Expected ${expected}, found ${describe()}`);
    index += 1;
  }

  function string() {
    index += 1;
    while (index < text.length) {
      const char = text[index];
      if (char === '"') { index += 1; return; }
      if (char === "\\") {
        const escape = text[index + 1];
        if (escape === "u") {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(index + 2, index + 6))) fail("Invalid \\u escape in string");
          index += 6;
        } else if ('"\\/bfnrt'.includes(escape) && escape !== undefined) {
          index += 2;
        } else {
          fail("Invalid escape in string");
        }
      } else if (char < " ") {
        fail("Control character in string; escape it, for example as \\n");
      } else {
        index += 1;
      }
    }
    fail("Unterminated string");
  }

  function members(close, item) {
    index += 1;
    skipWhitespace();
    if (text[index] === close) { index += 1; return; }
    for (;;) {
      item();
      skipWhitespace();
      if (text[index] === ",") {
        // A trailing comma is the most common slip, so the error points at the comma, not at the bracket after it.
        const comma = index;
        index += 1;
        skipWhitespace();
        if (text[index] === close) {
          index = comma;
          fail(`Trailing comma before '${close}'`);
        }
        continue;
      }
      if (text[index] === close) { index += 1; return; }
      fail(`Expected ',' or '${close}', found ${describe()}`);
    }
  }

  function value() {
    skipWhitespace();
    const char = text[index];
    if (char === "{") {
      members("}", () => {
        skipWhitespace();
        if (text[index] !== '"') fail(`Expected a property name in double quotes, found ${describe()}`);
        string();
        expect(":", "':' after the property name");
        value();
      });
    } else if (char === "[") {
      members("]", value);
    } else if (char === '"') {
      string();
    } else {
      NUMBER.lastIndex = index;
      const number = NUMBER.exec(text);
      const literal = LITERALS.find((word) => text.startsWith(word, index));
      if (number && number[0].length > 0 && number[0] !== "-") index += number[0].length;
      else if (literal) index += literal.length;
      else fail(`Expected a value, found ${describe()}`);
    }
  }

  value();
  skipWhitespace();
  if (index < text.length) fail(`Unexpected ${describe()} after the JSON value`);
}

// Return null for valid JSON, else a message with the error's line and column.
export function jsonProblem(text) {
  if (text.trim() === "") return "The request body is empty; enter a JSON value.";
  try {
    scan(text);
    JSON.parse(text);
    return null;
  } catch (error) {
    if (error instanceof SyntaxError) return `Invalid JSON: ${error.message}`;
    if (!(error instanceof JsonSyntaxError)) throw error;
    const lines = text.slice(0, error.position).split("\n");
    return `Invalid JSON at line ${lines.length}, column ${lines[lines.length - 1].length + 1}: ${error.message}.`;
  }
}
