"""Checks of test_openapi.sh against a running daemon and its /openapi.json.

    openapi_check.py routes  DOC URL SRC_DIR   every route the router serves is documented, and back
    openapi_check.py answers DOC URL           live answers have documented statuses and match the schemas
    openapi_check.py security DOC on|off       the bearer scheme is declared exactly where auth applies
    openapi_check.py unauthorized DOC URL      a request without the token gets the documented 401
    openapi_check.py page DOM DOC URL on|off   the Swagger UI page rendered every operation, from the daemon only
    openapi_check.py png FILE                  the screenshot is a real, non-blank picture

Needs `jsonschema` (installed with openapi-spec-validator). Exits 1 with a
message on the first failure.
"""

import http.client
import json
import re
import struct
import sys
import urllib.parse
import zlib
from html.parser import HTMLParser
from pathlib import Path

METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]
# Values for path parameters when a route is probed.
SAMPLES = {"key": "openapi-probe.txt", "node_id": "node-1", "file": "index.css"}
PUBLIC = {("get", "/"), ("get", "/openapi.json"), ("get", "/docs"), ("get", "/docs/{file}")}


def die(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def load(path):
    with open(path) as f:
        return json.load(f)


def request(url, method, path, headers=None, body=None):
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    conn.request(method, path, body=body, headers=headers or {})
    res = conn.getresponse()
    data = res.read()
    conn.close()
    return res.status, {k.lower(): v for k, v in res.getheaders()}, data


def operations(doc):
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method.upper() in METHODS + ["TRACE"]:
                yield path, method, op


def instantiate(template):
    return re.sub(r"\{(\w+)\}", lambda m: SAMPLES.get(m.group(1), "probe"), template)


# ---------------------------------------------------------------- routes


def router_routes(src_dir):
    """The paths the router registers, read from the HTTP sources."""
    found = set()
    for f in sorted(Path(src_dir).rglob("*.rs")):
        found.update(re.findall(r'\.route\(\s*"([^"]+)"', f.read_text()))
    if not found:
        die(f"no .route(\"…\") found under {src_dir}")
    return sorted(found)


def template_of(route, doc):
    """The document's path for an axum route (`:id`, `*rest` → `{…}`)."""
    t = re.sub(r"[:*](\w+)", r"{\1}", route)
    if t in doc["paths"]:
        return t
    if t.endswith("/"):
        # `/objects/`: the wildcard route with an empty parameter.
        for p in doc["paths"]:
            if p.startswith(t) and re.fullmatch(r"\{\w+\}", p[len(t):]):
                return p
    return None


def cmd_routes(doc_file, url, src_dir):
    doc = load(doc_file)
    routes = router_routes(src_dir)
    served = 0
    for route in routes:
        template = template_of(route, doc)
        if template is None:
            die(f"route {route} is not in the document (paths: {sorted(doc['paths'])})")
        concrete = re.sub(r"[:*](\w+)", lambda m: SAMPLES.get(m.group(1), "probe"), route)
        item = doc["paths"][template]
        for method in METHODS:
            status, _, _ = request(url, method, concrete)
            if status == 405:
                continue
            served += 1
            m = method.lower()
            if m in item or (m == "head" and "get" in item):
                continue
            die(f"{method} {route} is served ({status}) but {m} {template} is not in the document")
    count = 0
    for template, method, _ in operations(doc):
        count += 1
        status, _, body = request(url, method.upper(), instantiate(template))
        unrouted = status == 404 and body.strip() and json.loads(body).get("detail") == "Not Found"
        if status == 405 or unrouted:
            die(f"{method.upper()} {template} is documented but the router does not serve it ({status})")
    print(f"routes: {len(routes)} routes, {served} served methods documented; {count} documented operations served")


# ---------------------------------------------------------------- answers


def schema_validator(doc, schema):
    import jsonschema

    root = dict(schema)
    root["components"] = doc.get("components", {})
    return jsonschema.Draft202012Validator(root)


def check_answer(doc, method, template, status, headers, body, what):
    op = doc["paths"].get(template, {}).get(method.lower())
    if op is None:
        die(f"{what}: {method} {template} is not in the document")
    resp = op["responses"].get(str(status))
    if resp is None:
        die(f"{what}: {method} {template} answered {status}, not documented ({sorted(op['responses'])}): {body[:200]!r}")
    ctype = headers.get("content-type", "")
    essence = ctype.split(";")[0].strip()
    content = resp.get("content")
    if method == "HEAD" or status == 304:
        if body:
            die(f"{what}: {method} answered {status} with a body")
        return
    if not content:
        if body:
            die(f"{what}: {status} has a body but the document declares none")
        return
    if essence == "application/json":
        media = content.get("application/json")
        if media is None:
            die(f"{what}: JSON answer but {status} documents {sorted(content)}")
        errors = sorted(schema_validator(doc, media["schema"]).iter_errors(json.loads(body)), key=str)
        if errors:
            e = errors[0]
            die(f"{what}: {status} body does not match its schema at {list(e.absolute_path)}: {e.message}\nbody: {body[:400]!r}")
        return
    declared = [k for k in content if k in ("*/*", ctype) or k.split(";")[0].strip() == essence]
    if not declared:
        die(f"{what}: answered {ctype!r} but {status} documents {sorted(content)}")


def multipart(fields):
    boundary = "openapi-check-boundary"
    parts = []
    for name, filename, data in fields:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        parts.append(f"--{boundary}\r\nContent-Disposition: {disp}\r\n\r\n".encode() + data + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return {"Content-Type": f"multipart/form-data; boundary={boundary}"}, body


def cmd_answers(doc_file, url):
    doc = load(doc_file)
    mp_headers, mp_body = multipart([("file", "b.txt", b"multipart content\n")])
    nofile_headers, nofile_body = multipart([("other", None, b"x")])
    data = bytes(range(256)) * 8
    steps = [
        ("GET", "/", "/", {}, None),
        ("PUT", "/objects/{key}", "/objects/docs/a.bin", {}, data),
        ("PUT", "/objects/{key}", "/objects/docs/typed.txt?content_type=text/plain", {}, b"typed\n"),
        ("POST", "/objects/{key}", "/objects/docs/b.txt", mp_headers, mp_body),
        ("POST", "/objects/{key}", "/objects/docs/c.txt", nofile_headers, nofile_body),
        ("PUT", "/objects/{key}", "/objects/docs/a.bin/under-a-file", {}, b"x"),
        ("PUT", "/objects/{key}", "/objects/big.bin", {}, b"\0" * 70000),
        ("PUT", "/objects/{key}", "/objects/a/../b", {}, b"x"),
        ("GET", "/objects/{key}", "/objects/docs/a.bin", {}, None),
        ("GET", "/objects/{key}", "/objects/docs%2Fa.bin", {"Range": "bytes=0-99"}, None),
        ("GET", "/objects/{key}", "/objects/docs/a.bin", {"Range": "bytes=5000-"}, None),
        ("GET", "/objects/{key}", "/objects/docs", {}, None),
        ("GET", "/objects/{key}", "/objects/missing.txt", {}, None),
        ("HEAD", "/objects/{key}", "/objects/docs/a.bin", {}, None),
        ("GET", "/objects/{key}/info", "/objects/docs/a.bin/info", {}, None),
        ("GET", "/objects/{key}/info", "/objects/missing.txt/info", {}, None),
        ("GET", "/objects", "/objects?prefix=docs/&limit=1", {}, None),
        ("GET", "/objects", "/objects?start_after=docs/a.bin", {}, None),
        ("GET", "/objects", "/objects?limit=0", {}, None),
        ("GET", "/cluster/stats", "/cluster/stats", {}, None),
        ("GET", "/cluster/health", "/cluster/health", {}, None),
        ("POST", "/cluster/recovery/{node_id}", "/cluster/recovery/node-2", {}, None),
        ("POST", "/cluster/recovery/{node_id}", "/cluster/recovery/no-such-node", {}, None),
        ("GET", "/metrics/summary", "/metrics/summary", {}, None),
        ("GET", "/metrics", "/metrics", {}, None),
        ("POST", "/metrics/export", "/metrics/export", {}, None),
        ("GET", "/openapi.json", "/openapi.json", {}, None),
        ("GET", "/docs", "/docs", {}, None),
        ("GET", "/docs/{file}", "/docs/swagger-ui.css", {}, None),
        ("GET", "/docs/{file}", "/docs/no-such-file.js", {}, None),
        ("DELETE", "/objects/{key}", "/objects/docs/b.txt", {}, None),
        ("DELETE", "/objects/{key}", "/objects/docs", {}, None),
        ("POST", "/metrics/clear", "/metrics/clear", {}, None),
    ]
    seen = {}
    etag = None
    for method, template, path, headers, body in steps:
        if headers.get("If-None-Match") == "ETAG":
            headers = {**headers, "If-None-Match": etag}
        status, h, data_back = request(url, method, path, headers, body)
        what = f"{method} {path}"
        check_answer(doc, method, template, status, h, data_back, what)
        seen.setdefault((method, template), set()).add(status)
        if method == "GET" and path == "/objects/docs/a.bin" and status == 200:
            etag = h.get("etag")
            if data_back != data:
                die("the download differs from the upload")
        print(f"  {what}: {status}")
    # Conditional GET with the ETag just seen.
    status, h, body = request(url, "GET", "/objects/docs/a.bin", {"If-None-Match": etag or '"none"'})
    check_answer(doc, "GET", "/objects/{key}", status, h, body, "GET with If-None-Match")
    seen[("GET", "/objects/{key}")].add(status)
    expected = {
        ("GET", "/objects/{key}"): {200, 206, 304, 404, 409, 416},
        ("PUT", "/objects/{key}"): {200, 400, 409, 413},
        ("POST", "/objects/{key}"): {200},
        ("GET", "/objects"): {200, 400},
        ("GET", "/objects/{key}/info"): {200, 404},
        ("POST", "/cluster/recovery/{node_id}"): {200, 404},
        ("GET", "/docs/{file}"): {200, 404},
    }
    for key, want in expected.items():
        if not want <= seen.get(key, set()):
            die(f"{key}: expected to see statuses {sorted(want)}, saw {sorted(seen.get(key, set()))}")
    # A multipart POST without `file`: 422 in FastAPI's shape is documented
    # (the prototype's exact answer must match it); 400 is the older answer.
    if not seen[("POST", "/objects/{key}")] & {400, 422}:
        die("POST without a file field was neither 400 nor 422")
    fastapi = {"detail": [{"type": "missing", "loc": ["body", "file"], "msg": "Field required", "input": None}]}
    schema = doc["paths"]["/objects/{key}"]["post"]["responses"]["422"]["content"]["application/json"]["schema"]
    errors = list(schema_validator(doc, schema).iter_errors(fastapi))
    if errors:
        die(f"FastAPI's 422 answer does not match the documented 422: {errors[0].message}")
    for name, want in [("multipart/form-data", "file"), ("application/octet-stream", None)]:
        media = doc["paths"]["/objects/{key}"]["post"]["requestBody"]["content"].get(name)
        if media is None:
            die(f"POST /objects/{{key}} does not document a {name} body")
        if want:
            ref = media["schema"]["$ref"].rsplit("/", 1)[-1]
            props = doc["components"]["schemas"][ref]["properties"]
            if props.get(want, {}).get("format") != "binary":
                die(f"the multipart form has no binary `{want}` field: {props}")
    params = {p["name"]: p["in"] for p in doc["paths"]["/objects/{key}"]["get"]["parameters"]}
    for name, where in [("key", "path"), ("Range", "header"), ("If-None-Match", "header")]:
        if params.get(name) != where:
            die(f"GET /objects/{{key}} does not document the {where} parameter {name}: {params}")
    listing = {p["name"]: p["in"] for p in doc["paths"]["/objects"]["get"]["parameters"]}
    for name in ["prefix", "limit", "start_after"]:
        if listing.get(name) != "query":
            die(f"GET /objects does not document the query parameter {name}: {listing}")
    upload = {p["name"]: p["in"] for p in doc["paths"]["/objects/{key}"]["put"]["parameters"]}
    if upload.get("content_type") != "query":
        die(f"PUT /objects/{{key}} does not document the query parameter content_type: {upload}")
    print(f"answers: {len(steps) + 1} live answers match the document")


# ---------------------------------------------------------------- security


def cmd_security(doc_file, mode):
    doc = load(doc_file)
    schemes = doc.get("components", {}).get("securitySchemes", {})
    if mode == "off":
        if schemes:
            die(f"security schemes without api.auth_token: {schemes}")
        for path, method, op in operations(doc):
            if op.get("security") or "401" in op["responses"]:
                die(f"{method} {path} declares auth without api.auth_token")
        print("security: none declared, as configured")
        return
    bearer = schemes.get("bearerAuth", {})
    if bearer.get("type") != "http" or bearer.get("scheme") != "bearer":
        die(f"no bearer scheme in components.securitySchemes: {schemes}")
    protected = 0
    for path, method, op in operations(doc):
        if (method, path) in PUBLIC:
            if op.get("security") or "401" in op["responses"]:
                die(f"{method} {path} is public but declares the bearer scheme")
            continue
        protected += 1
        if op.get("security") != [{"bearerAuth": []}]:
            die(f"{method} {path} does not declare the bearer scheme: {op.get('security')}")
        if "401" not in op["responses"]:
            die(f"{method} {path} does not document 401")
    print(f"security: bearer scheme on {protected} operations, {len(PUBLIC)} public")


def cmd_unauthorized(doc_file, url):
    doc = load(doc_file)
    for method, template in [("GET", "/objects"), ("GET", "/cluster/health"), ("DELETE", "/objects/{key}")]:
        path = instantiate(template)
        status, h, body = request(url, method, path)
        if status != 401:
            die(f"{method} {path} without a token answered {status}")
        check_answer(doc, method, template, status, h, body, f"{method} {path} without a token")
    for path in ["/", "/openapi.json", "/docs", "/docs/", "/docs/swagger-ui-bundle.js"]:
        status, _, _ = request(url, "GET", path)
        if status != 200:
            die(f"GET {path} without a token answered {status}, expected 200 (public)")
    print("unauthorized: 401 as documented; the API's description is public")


# ---------------------------------------------------------------- page


class Dom(HTMLParser):
    def __init__(self):
        super().__init__()
        self.paths, self.resources, self.classes = [], [], []
        self.in_title, self.title = False, ""

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "data-path" in a:
            self.paths.append(a["data-path"])
        if tag == "script" and a.get("src"):
            self.resources.append(a["src"])
        if tag == "link" and a.get("href"):
            self.resources.append(a["href"])
        if tag == "img" and a.get("src") and not a["src"].startswith("data:"):
            self.resources.append(a["src"])
        self.classes.extend((a.get("class") or "").split())
        if tag == "h2" and "title" in (a.get("class") or "").split():
            self.in_title = True

    def handle_endtag(self, tag):
        if tag == "h2":
            self.in_title = False

    def handle_data(self, data):
        if self.in_title:
            self.title += data


def cmd_page(dom_file, doc_file, url, auth):
    doc = load(doc_file)
    dom = Dom()
    dom.feed(Path(dom_file).read_text(errors="replace"))
    if "MiniGCS API" not in dom.title:
        die(f"the page's title is {dom.title!r}: Swagger UI did not render the document")
    missing = sorted(set(doc["paths"]) - set(dom.paths))
    if missing:
        die(f"the page shows no operation for {missing} (shown: {sorted(set(dom.paths))})")
    ops = sum(1 for _ in operations(doc))
    blocks = sum(1 for c in dom.classes if c == "opblock")
    if blocks < ops:
        die(f"the page shows {blocks} operations, the document has {ops}")
    origin = urllib.parse.urlsplit(url)
    for r in dom.resources:
        u = urllib.parse.urlsplit(r)
        if u.scheme and (u.scheme, u.netloc) != (origin.scheme, origin.netloc):
            die(f"the page loads {r} from another site")
    if auth == "on" and "authorize" not in dom.classes:
        die("no Authorize button although api.auth_token is set")
    print(f"page: {blocks} operations over {len(set(dom.paths))} paths rendered, {len(dom.resources)} resources, all local")


def png_pixels(data):
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        die("the screenshot is not a PNG")
    pos, idat, width, height = 8, b"", 0, 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", chunk[:10])
            if depth != 8 or color not in (2, 6):
                die(f"unexpected PNG format (depth {depth}, color type {color})")
            bpp = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows, prev = [], bytearray(stride)
    for y in range(height):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], (prev[i - bpp] if i >= bpp else 0)
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(line)
        prev = line
    return width, height, bpp, rows


def cmd_png(file):
    """A rendered page: dark text, and Swagger UI's blue GET and green POST badges."""
    data = Path(file).read_bytes()
    width, height, bpp, rows = png_pixels(data)
    if width < 800 or height < 600:
        die(f"the screenshot is only {width}x{height}")

    def near(p, q):
        return all(abs(a - b) <= 12 for a, b in zip(p, q))

    sampled = dark = get_blue = post_green = 0
    for line in rows[::2]:
        for x in range(0, width * bpp, bpp * 2):
            p = (line[x], line[x + 1], line[x + 2])
            sampled += 1
            dark += sum(p) < 300
            get_blue += near(p, (97, 175, 254))
            post_green += near(p, (73, 204, 144))
    shares = {"dark text": dark / sampled, "GET blue": get_blue / sampled, "POST green": post_green / sampled}
    floors = {"dark text": 0.003, "GET blue": 0.005, "POST green": 0.002}
    low = [k for k in shares if shares[k] < floors[k]]
    if low:
        die(f"the screenshot does not show the rendered page ({', '.join(low)} too rare): "
            + ", ".join(f"{k} {v:.2%}" for k, v in shares.items()))
    print(f"png: {width}x{height}, {len(data)} bytes; " + ", ".join(f"{k} {v:.1%}" for k, v in shares.items()))


def main(argv):
    cmds = {
        "routes": (cmd_routes, 3),
        "answers": (cmd_answers, 2),
        "security": (cmd_security, 2),
        "unauthorized": (cmd_unauthorized, 2),
        "page": (cmd_page, 4),
        "png": (cmd_png, 1),
    }
    if len(argv) < 2 or argv[1] not in cmds or len(argv) - 2 != cmds[argv[1]][1]:
        die(__doc__)
    cmds[argv[1]][0](*argv[2:])


if __name__ == "__main__":
    main(sys.argv)
