#!/usr/bin/env python3
"""Imports the parts of HL7's official FHIR R4 definitions that Carnet uses into fhir-profiles/r4/.

Run from the project root, with the definitions folder as argument (default ../shared/fhir-r4/definitions):
    python3 tools/import_fhir_definitions.py [DEFINITIONS_DIR]

Outputs (committed; the server embeds them at build time and never reads ../shared):
- fhir-profiles/r4/elements.json: per type (resource or data type), its elements from the snapshot:
  path, min, max, isSummary (as `summary`), types, contentReference, required-binding codes (when the definition lists them),
  and for primitive types their JSON kind and regex.
- fhir-profiles/r4/search-parameters.json, fhir-profiles/r4/compartment-patient.json: copied as they are.
"""
import json, os, re, shutil, sys

src = sys.argv[1] if len(sys.argv) > 1 else os.path.join('..', 'shared', 'fhir-r4', 'definitions')
out = os.path.join('fhir-profiles', 'r4')
os.makedirs(out, exist_ok=True)

REGEX_EXT = 'http://hl7.org/fhir/StructureDefinition/regex'
JSON_TYPE_EXT = 'http://hl7.org/fhir/StructureDefinition/structuredefinition-json-type'
FHIR_TYPE_EXT = 'http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type'
CODE_LIST = re.compile(r'^[A-Za-z0-9._-]+( \| [A-Za-z0-9._-]+)+$')

types = {}
primitives = {}
for name in ('profiles-types.json', 'profiles-resources.json'):
    bundle = json.load(open(os.path.join(src, name)))
    for entry in bundle['entry']:
        sd = entry['resource']
        if sd.get('resourceType') != 'StructureDefinition' or sd.get('derivation') == 'constraint':
            continue
        tname = sd['id']
        if sd['kind'] == 'primitive-type':
            # The regex and JSON kind sit on the `value` element of the primitive.
            for el in sd['snapshot']['element']:
                if el['path'] == tname + '.value':
                    t = el.get('type', [{}])[0]
                    exts = {e['url']: e for e in t.get('extension', [])}
                    json_kind = exts.get(JSON_TYPE_EXT, {}).get('valueString', 'string')
                    regex = None
                    for e in el.get('type', [{}])[0].get('extension', []):
                        if e['url'] == REGEX_EXT:
                            regex = e['valueString']
                    primitives[tname] = {'json': json_kind, 'regex': regex}
            continue
        elements = []
        for el in sd['snapshot']['element']:
            item = {'path': el['path'], 'min': el.get('min', 0), 'max': el.get('max', '*')}
            if el.get('isSummary'):
                item['summary'] = True
            if 'contentReference' in el:
                item['contentReference'] = el['contentReference'].lstrip('#')
            tys = []
            for t in el.get('type', []):
                code = t['code']
                for e in t.get('extension', []):
                    if e['url'] == FHIR_TYPE_EXT:
                        code = e['valueUrl']
                tys.append(code)
            if tys:
                item['types'] = tys
            b = el.get('binding')
            # R4 definitions do not carry the codes of a value set; for `code` elements bound
            # `required`, the generated `short` is the code list ("male | female | other | unknown").
            if b and b.get('strength') == 'required' and tys == ['code'] and CODE_LIST.match(el.get('short', '')):
                item['codes'] = el['short'].split(' | ')
                item['valueSet'] = b.get('valueSet')
            elements.append(item)
        types[tname] = {'kind': sd['kind'], 'abstract': sd.get('abstract', False), 'elements': elements}

json.dump({'primitives': primitives, 'types': types}, open(os.path.join(out, 'elements.json'), 'w'), separators=(',', ':'), sort_keys=True)
shutil.copy(os.path.join(src, 'search-parameters.json'), os.path.join(out, 'search-parameters.json'))
shutil.copy(os.path.join(src, 'CompartmentDefinition-patient.json'), os.path.join(out, 'compartment-patient.json'))
print(f'{len(types)} types, {len(primitives)} primitives written to {out}')
