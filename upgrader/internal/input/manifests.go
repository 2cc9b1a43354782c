package input

import (
	"bytes"
	"encoding/json"
	"errors"

	batchv1 "k8s.io/api/batch/v1"
	"sigs.k8s.io/yaml"
)

// decodeManifest takes a manifest as a JSON object or as a YAML/JSON string.
func decodeManifest(raw json.RawMessage) (map[string]any, error) {
	var text string
	if err := json.Unmarshal(raw, &text); err == nil {
		j, err := yaml.YAMLToJSON([]byte(text))
		if err != nil {
			return nil, err
		}

		raw = j
	}

	var obj map[string]any

	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()

	if err := dec.Decode(&obj); err != nil {
		return nil, err
	}

	if obj == nil {
		return nil, errors.New("the manifest is empty")
	}

	return obj, nil
}

// hookJob is a hook as apply runs it: a manifest, and a Job with a name.
func hookJob(raw json.RawMessage) (batchv1.Job, error) {
	obj, err := decodeManifest(raw)
	if err != nil {
		return batchv1.Job{}, errors.New("is not a manifest: " + err.Error())
	}

	j, _ := json.Marshal(obj) //nolint:errcheck

	var job batchv1.Job
	if err := json.Unmarshal(j, &job); err != nil || job.Kind != "Job" || job.Name == "" {
		return batchv1.Job{}, errors.New("must be a batch/v1 Job with a name")
	}

	return job, nil
}
