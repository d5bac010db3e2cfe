// The console's request-body editor: CodeMirror 6 with JSON highlighting and
// line numbers, bundled by build.sh into src/sageport/console/static/vendor/editor.js so that no
// Node.js is needed to run Sageport.
//
// Tab is deliberately left unbound (indentWithTab is not installed), so Tab and
// Shift+Tab move focus out of the editor as in any other text field.
import { EditorState, Compartment } from "@codemirror/state";
import {
  EditorView,
  keymap,
  lineNumbers,
  highlightActiveLine,
  highlightActiveLineGutter,
  drawSelection,
} from "@codemirror/view";
import { defaultKeymap, history, historyKeymap } from "@codemirror/commands";
import {
  bracketMatching,
  syntaxHighlighting,
  defaultHighlightStyle,
  foldGutter,
  indentOnInput,
} from "@codemirror/language";
import { json } from "@codemirror/lang-json";

// Create an editor in `parent`. `onChange(text)` runs after every edit and
// `onSubmit()` on Ctrl/Cmd+Enter; `nonce` is the page's CSP style nonce. Returns a small facade, so the console's own
// modules never import CodeMirror directly.
export function createEditor(parent, { doc = "", label, nonce, onChange, onSubmit }) {
  const language = new Compartment();
  const view = new EditorView({
    parent,
    state: EditorState.create({
      doc,
      extensions: [
        lineNumbers(),
        foldGutter(),
        highlightActiveLineGutter(),
        highlightActiveLine(),
        history(),
        drawSelection(),
        indentOnInput(),
        bracketMatching(),
        syntaxHighlighting(defaultHighlightStyle, { fallback: true }),
        language.of(json()),
        // CodeMirror injects its styles as <style> elements, which the console's
        // Content-Security-Policy allows only with the page's nonce.
        EditorView.cspNonce.of(nonce || ""),
        keymap.of([
          { key: "Mod-Enter", run: () => (onSubmit(), true) },
          ...defaultKeymap,
          ...historyKeymap,
        ]),
        EditorView.contentAttributes.of({
          "aria-label": label,
          "aria-multiline": "true",
          role: "textbox",
        }),
        EditorView.updateListener.of((update) => {
          if (update.docChanged) onChange(update.state.doc.toString());
        }),
      ],
    }),
  });
  return {
    getText: () => view.state.doc.toString(),
    setText(text) {
      view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: text } });
    },
    setLanguage(name) {
      view.dispatch({ effects: language.reconfigure(name === "json" ? json() : []) });
    },
    focus: () => view.focus(),
    contentElement: view.contentDOM,
  };
}
