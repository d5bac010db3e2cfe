// "Copy as" snippets for a test request. They never contain a credential:
// keys come from the environment of the user who runs the snippet.

function shellQuote(text) {
  return `'${text.replaceAll("'", "'\\''")}'`;
}

function pyString(text) {
  return JSON.stringify(text);
}

export function snippets(request, origin) {
  const bodyText = request.kind === "file" ? null : request.text;
  const headers = request.headers.filter(([name]) => name.toLowerCase() === "x-amzn-sagemaker-custom-attributes");
  const attributes = headers.length ? headers[0][1] : null;
  return {
    "AWS CLI": awsCli(request, origin, bodyText, attributes),
    boto3: boto3(request, origin, bodyText, attributes),
    curl: curl(request, origin, bodyText),
  };
}

// Text bodies go through a file too, because `--body fileb://FILE` sends raw
// bytes on AWS CLI v1 and v2 alike. AWS CLI v2 reads a literal `--body` as
// base64 unless given `--cli-binary-format raw-in-base64-out`, which v1 rejects.
const BODY_FILES = { json: "request.json", csv: "request.csv", text: "request.txt" };

function awsCli(request, origin, bodyText, attributes) {
  const bodyFile = bodyText === null ? request.fileName || "request.bin" : BODY_FILES[request.kind] || "request.txt";
  const lines = ["# Credentials and region come from your AWS CLI configuration or environment."];
  if (bodyText !== null) lines.push(`printf '%s' ${shellQuote(bodyText)} > ${shellQuote(bodyFile)}`);
  lines.push(
    `aws sagemaker-runtime invoke-endpoint --endpoint-url ${shellQuote(origin)} \\`,
    `  --endpoint-name ${shellQuote(request.endpoint)} \\`,
    `  --content-type ${shellQuote(request.contentType)} \\`,
  );
  if (request.accept) lines.push(`  --accept ${shellQuote(request.accept)} \\`);
  if (request.variant) lines.push(`  --target-variant ${shellQuote(request.variant)} \\`);
  if (attributes) lines.push(`  --custom-attributes ${shellQuote(attributes)} \\`);
  lines.push(`  --body fileb://${shellQuote(bodyFile)} \\`);
  lines.push("  response.out");
  return lines.join("\n");
}

function boto3(request, origin, bodyText, attributes) {
  const args = [
    `    EndpointName=${pyString(request.endpoint)},`,
    `    ContentType=${pyString(request.contentType)},`,
  ];
  if (request.accept) args.push(`    Accept=${pyString(request.accept)},`);
  if (request.variant) args.push(`    TargetVariant=${pyString(request.variant)},`);
  if (attributes) args.push(`    CustomAttributes=${pyString(attributes)},`);
  args.push(bodyText === null
    ? `    Body=open(${pyString(request.fileName || "request.bin")}, "rb").read(),`
    : `    Body=${pyString(bodyText)}.encode(),`);
  return [
    "import boto3",
    "",
    "# Credentials and region come from your environment or AWS config, as usual.",
    `runtime = boto3.client("sagemaker-runtime", endpoint_url=${pyString(origin)})`,
    "response = runtime.invoke_endpoint(",
    ...args,
    ")",
    'print(response["Body"].read().decode())',
  ].join("\n");
}

function curl(request, origin, bodyText) {
  const url = `${origin}/endpoints/${encodeURIComponent(request.endpoint)}/invocations`;
  const lines = [
    "# Signs with the keys in your environment; no key is written here.",
    `curl -sS ${shellQuote(url)} \\`,
    '  --aws-sigv4 "aws:amz:${AWS_DEFAULT_REGION:-us-east-1}:sagemaker" \\',
    '  --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \\',
    `  -H ${shellQuote(`Content-Type: ${request.contentType}`)} \\`,
  ];
  if (request.accept) lines.push(`  -H ${shellQuote(`Accept: ${request.accept}`)} \\`);
  if (request.variant) lines.push(`  -H ${shellQuote(`X-Amzn-SageMaker-Target-Variant: ${request.variant}`)} \\`);
  for (const [name, value] of request.headers) lines.push(`  -H ${shellQuote(`${name}: ${value}`)} \\`);
  lines.push(bodyText === null
    ? `  --data-binary @${shellQuote(request.fileName || "request.bin")}`
    : `  --data-binary ${shellQuote(bodyText)}`);
  return lines.join("\n");
}
